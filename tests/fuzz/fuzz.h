#ifndef TESTS_FUZZ_H
#define TESTS_FUZZ_H

/*
 * What every fuzz target shares: the libFuzzer entry points (each target defines
 * LLVMFuzzerTestOneInput, and LLVMFuzzerInitialize when it has set-up to do), and FUZZ_CHECK,
 * the way a target states a property of the code under test. Built with -Dfuzz=true the
 * targets run under libFuzzer; otherwise standalone.c calls the same entry points on the files
 * it is given, so that the corpus and the regression inputs are replayed by every build.
 */

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* Runs one input. Returns 0 (libFuzzer reserves other values). */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Once, before the first input. Optional. */
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* A property that must hold whatever the input: when it does not, says which and aborts, so
 * that libFuzzer keeps the input as a crash. Not compiled out by NDEBUG. */
#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: property does not hold: %s\n", __FILE__, __LINE__, #cond);     \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#endif
