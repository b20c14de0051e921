"""The export corpus: real PyTorch architectures through edgeopt's export and run (scripts/export_corpus.sh)."""
