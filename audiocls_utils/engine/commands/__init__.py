"""The `audiocls` command line (`cli`) and what only it calls: download, export, the
dashboard and the app."""
