"""The stand-in's own copy of the course catalogue and levy register (CSV files).

The grant system belongs to another team and keeps its own reference data; this copy is taken
from the scheme's published `reference/*.csv`.
"""
