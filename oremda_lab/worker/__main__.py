from oremda_lab.worker.main import main

main()
