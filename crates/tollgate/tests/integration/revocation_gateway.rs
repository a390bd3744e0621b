//! Revocation at the gateway: refused tokens and live connections closed, one node and two.
