"""Real parts for Onboard's tests and benchmarks, as plain modules.

Tests reach these through fixtures (``tests/conftest.py`` and the conftest files
below it only define fixtures that call this package); ``bench/`` imports them
directly. One module per concern:

* :mod:`tests.harness.paths`: the repository root and the venv's executables;
* :mod:`tests.harness.wait`: polling with a deadline, free loopback ports;
* :mod:`tests.harness.procs`: a process group with its log file, started and stopped;
* :mod:`tests.harness.mail`: the aiosmtpd SMTP sink and mail body helpers;
* :mod:`tests.harness.broker`: RabbitMQ vhosts on the shared broker;
* :mod:`tests.harness.rabbit`: a private RabbitMQ node tests may stop and start;
* :mod:`tests.harness.databases`: fresh SQLite and PostgreSQL databases;
* :mod:`tests.harness.stack`: :class:`~tests.harness.stack.Stack`, the app over all of the above;
* :mod:`tests.harness.webapp`: the fast app (no broker, no worker) for pure web behaviour;
* :mod:`tests.harness.forms`: test-client helpers (CSRF, sign-up, log-in);
* :mod:`tests.harness.browser`: Debian's Chromium and a real HTTP server.
"""
