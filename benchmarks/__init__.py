"""`make bench`: each module here measures one part side by side in one run and prints a table."""
