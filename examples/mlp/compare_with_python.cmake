# Runs `mlp_example --read FILE` and PyTorch's reading of FILE (check_checkpoint.py --mynn-probe)
# and requires the same printed outputs. Both use libtorch 1.13 kernels on the same machine.
execute_process(COMMAND "${EXAMPLE}" --read "${FILE}" OUTPUT_VARIABLE cpp RESULT_VARIABLE rc1)
execute_process(COMMAND /usr/bin/python3 "${CHECKER}" --mynn-probe "${FILE}"
                OUTPUT_VARIABLE py RESULT_VARIABLE rc2)
string(STRIP "${cpp}" cpp)
string(STRIP "${py}" py)
if(NOT rc1 EQUAL 0 OR NOT rc2 EQUAL 0)
  message(FATAL_ERROR "reading failed (C++ exit ${rc1}, Python exit ${rc2})")
endif()
if(NOT cpp STREQUAL py)
  message(FATAL_ERROR "outputs differ:\n  C++:    ${cpp}\n  Python: ${py}")
endif()
message(STATUS "C++ and PyTorch agree: ${cpp}")
