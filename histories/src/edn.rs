//! Jepsen / Knossos / Elle EDN histories. (Filled in below.)
