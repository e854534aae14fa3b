//! A std-shaped ordered map on a skiplist. Being built; see issue 2.
