"""The ``creditmeter`` command line: a worked demo, migrations, verification and admin."""
