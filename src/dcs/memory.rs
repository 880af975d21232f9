//! In-memory backend for tests (in progress).
