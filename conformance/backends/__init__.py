"""Running backends: the protocol, the registry, calling a backend, worker-process isolation, the machine's facts."""
