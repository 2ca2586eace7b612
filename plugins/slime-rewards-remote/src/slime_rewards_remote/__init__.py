"""Remote reward model client for slime: remote_rm (HTTP POST to --rm-url)"""
