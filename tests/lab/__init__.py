"""The project's lab: everything tests/integration and bench/run need to build
namespaces, start dpsw and drive traffic, in one place.

  env      where the build is (dpsw, dpswctl, dpsw-pktgen); core placement
  proc     commands (sh, in a namespace), LabError, processes started and ended by PID
  topo     per-run prefixes, namespaces and veths (Topology), the "outside world"
           namespace, the kernel's reference topologies (bridge, NAT, VXLAN),
           the overlay test fabric; removal of everything with a prefix
  dpsw     a dpsw process started from a config given as Python data
           (rendered with PyYAML), its control socket, its namespaces
  traffic  ping, byte-exact TCP, raw frames, iperf3, dpsw-pktgen, sockperf,
           dpdk-testpmd (virtio-user and AF_XDP), CPU accounting
  testing  the integration tests' conventions: skip/fail codes, check(),
           scenario_main(), the tests' dpsw profile
  bench    bench/run's variants, scenarios, report rows and measurements

No installation: a user puts the directory holding `lab` (tests/) on sys.path
relative to its own file. Nothing here sends traffic anywhere but between
namespaces it created (SPEC section 5).
"""
