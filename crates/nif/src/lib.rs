//! NIF binding. (Being written.)
