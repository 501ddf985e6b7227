/* head.c: to be written; see the header. */
