"""The reference CSVs bundled with the package (copies of the scheme's reference/ folder)."""
