# The twistd plugin for ``twistd chat``: one line, so that listing plugins
# stays cheap; chatsvc.tap is imported only when the subcommand runs.
from twisted.application.service import ServiceMaker

chat = ServiceMaker("chatsvc relay", "chatsvc.tap", "End-to-end encrypted chat relay.", "chat")
