"""Benchmarks: ``python -m benchmarks`` runs the original approach beside this project (see __main__)."""
