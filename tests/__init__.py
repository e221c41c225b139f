"""The test suite; shared helpers and subprocess drivers live in :mod:`tests.helpers`."""
