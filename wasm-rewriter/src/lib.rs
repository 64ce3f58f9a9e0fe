//! The migration-point transform (design §4). Work in progress: see issue 3.
