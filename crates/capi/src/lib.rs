//! C ABI. (Being written.)
