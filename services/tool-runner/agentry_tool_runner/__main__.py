from agentry_tool_runner.main import main

main()
