//! HTTP on the daemon's listeners: the web admin and JSON API (HTTPS) and the
//! port-80 listener (ACME HTTP-01 challenges, redirect to HTTPS), served with
//! picoserve on smol.
