//! Host-routed reverse proxy and load balancer with health checks and draining.
