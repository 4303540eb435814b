//! Domain ownership verification and the DNS tester (issue 5).
