"""``python -m tfimp``: the command line (:mod:`tfimp.cli.main`)."""

from tfimp.cli.main import console_main

if __name__ == "__main__":
    console_main()
