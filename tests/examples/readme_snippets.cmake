# SPDX-License-Identifier: MIT
# Writes each README code block marked `<!-- test: NAME -->` to OUT/NAME.inc for the tests to
# #include (see readme_snippets.py); runs again whenever README.md changes.
function(configured_model_readme_snippets readme out)
  set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS "${readme}")
  execute_process(
    COMMAND /usr/bin/python3 "${CMAKE_CURRENT_FUNCTION_LIST_DIR}/readme_snippets.py"
            "${readme}" "${out}"
    RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "extracting the README's tested code blocks failed")
  endif()
endfunction()
