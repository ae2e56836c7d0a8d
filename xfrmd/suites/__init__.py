"""``xfrmd suites``: other projects' test suites run unmodified against xfrmd. Only the
runner lives here: the suites' files come from the package registries at run time and are
cached under the user's cache directory (``kselftest.py``: the kernel's net selftests from
Debian's ``linux-source`` package; ``pyroute2_suite.py``: pyroute2's Linux tests and
``iproute2_suite.py``: iproute2's ip testsuite, both from Debian source packages found by
``debsrc.py``). This package's ``__init__`` imports nothing."""
