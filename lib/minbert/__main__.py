from minbert.cli import main

main()
