"""Data layer: motifs, simulated and FASTA datasets, one-hot encoding."""
