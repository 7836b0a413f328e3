# Installs the built project into a temporary prefix, then builds and runs a consumer against it
# with find_package (tests/cmake_import), and checks its file with the installed zanj tool.
file(REMOVE_RECURSE "${WORK}")
function(step)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGN}\n${out}\n${err}")
  endif()
  message(STATUS "${out}")
endfunction()
step("${CMAKE_COMMAND}" --install "${BUILD}" --prefix "${WORK}/prefix")
step("${CMAKE_COMMAND}" -S "${SOURCE}/tests/cmake_import" -B "${WORK}/consumer" -G Ninja
     -DCMAKE_BUILD_TYPE=Release "-DCMAKE_PREFIX_PATH=${WORK}/prefix"
     -DCMAKE_CXX_COMPILER_LAUNCHER=${LAUNCHER})
step("${CMAKE_COMMAND}" --build "${WORK}/consumer")
step("${WORK}/consumer/consumer" "${WORK}/tiny.zanj")
if(EXISTS "${WORK}/prefix/bin/zanj")
  step("${WORK}/prefix/bin/zanj" verify "${WORK}/tiny.zanj")
endif()
