//! Tests of the request server.
