from tomchat.cli.main import main

main()
