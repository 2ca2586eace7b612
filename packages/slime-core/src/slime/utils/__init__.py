"""slime's ``slime.utils`` import paths, for code written against slime: thin modules over slime-core's own."""
