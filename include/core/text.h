#ifndef CORE_TEXT_H
#define CORE_TEXT_H

/*
 * Small pure helpers over text that the API (percent-encoded URLs) and the services (names and
 * checksums on the wire) share. Any thread.
 */

/* The value of hex digit c (either case), or -1 when c is not one. */
static inline int core_hex_value(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

#endif
