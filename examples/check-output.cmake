# Runs one example and compares what it prints with its .expected file.
#   cmake -DPROGRAM=path -DEXPECTED=file -DACTUAL=file -P check-output.cmake
# Fails when the program exits nonzero (one of its checks failed) or when its
# standard output differs from EXPECTED by a single byte. The program's
# standard error is passed through, so that ctest sees sanitizer reports.
execute_process(COMMAND ${PROGRAM} OUTPUT_VARIABLE actual ERROR_VARIABLE errors
                RESULT_VARIABLE status)
if(NOT errors STREQUAL "")
    message("${errors}")
endif()
file(WRITE ${ACTUAL} "${actual}")
file(READ ${EXPECTED} expected)
if(NOT actual STREQUAL expected)
    # diff shows where; the full output is kept beside the build for updating.
    execute_process(COMMAND diff -u ${EXPECTED} ${ACTUAL})
    message(FATAL_ERROR "${PROGRAM}: the output differs from ${EXPECTED} (all of it: ${ACTUAL})")
endif()
if(NOT status EQUAL 0)
    message(FATAL_ERROR "${PROGRAM} exited with ${status}")
endif()
