//! Revocation's interfaces: server API, admin REST, CLI; every target; restarts.
