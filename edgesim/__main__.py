from edgesim._entry import main

main()
