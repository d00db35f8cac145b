"""``python -m oremda_lab.worker``."""

from oremda_lab.worker.main import main

main()
