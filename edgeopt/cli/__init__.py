"""The ``edgeopt`` command: argument parsers and thin handlers over the library; no library logic lives here."""
