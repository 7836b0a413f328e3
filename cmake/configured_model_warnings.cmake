# Warning flags for our own targets only (PRIVATE), never on the public interface.
function(configured_model_enable_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wshadow -Wconversion
                                           -Wno-unused-parameter)
  if(CONFIGURED_MODEL_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()
