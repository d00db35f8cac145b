"""The oremda-lab operator library: one folder per operator (operator.json + code)."""
