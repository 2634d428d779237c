"""What the tests and the benchmarks share: real servers (sshd, nginx, PostgreSQL, Prometheus, SMTP),
loopback HTTP servers, a project of local hosts, and the fault, field and hostile labs."""
