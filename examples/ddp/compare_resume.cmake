# For N = 2 and 3 ranks: 120 steps straight vs 60 steps, stop, then --resume to 120 in new
# processes; the final_state_digest lines (model + optimizer tensors, equal on every rank) must
# be equal. Then a checkpoint written by 3 ranks resumes on 2 and on 1.
file(REMOVE_RECURSE "${WORK}")
function(run_example out_var)
  execute_process(COMMAND "${EXAMPLE}" --timeout-s 240 ${ARGN} OUTPUT_VARIABLE out
                  ERROR_VARIABLE err RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${EXAMPLE} ${ARGN} failed (${rc}):\n${out}\n${err}")
  endif()
  string(REGEX MATCH "final_state_digest=[0-9a-f]+\n?$" digest "${out}")
  string(STRIP "${digest}" digest)
  set(${out_var} "${digest}" PARENT_SCOPE)
endfunction()
foreach(n 2 3)
  run_example(straight --world-size ${n} --ckpt-dir "${WORK}/straight${n}" --steps 120 --save-every 20)
  run_example(first_half --world-size ${n} --ckpt-dir "${WORK}/split${n}" --steps 60 --save-every 20)
  run_example(resumed --world-size ${n} --ckpt-dir "${WORK}/split${n}" --steps 120 --save-every 20 --resume)
  if(straight STREQUAL "" OR NOT straight STREQUAL resumed)
    message(FATAL_ERROR "${n} ranks: straight '${straight}', resumed '${resumed}'")
  endif()
  if(first_half STREQUAL straight)
    message(FATAL_ERROR "the first half already equals the full run: the test proves nothing")
  endif()
  message(STATUS "${n} ranks identical: ${straight}")
endforeach()
# 3 -> 2 and 3 -> 1: the model and optimizer come back whole; training goes on.
run_example(two --world-size 2 --ckpt-dir "${WORK}/split3" --steps 140 --save-every 20 --resume)
run_example(one --world-size 1 --ckpt-dir "${WORK}/split3" --steps 160 --save-every 20 --resume)
if(two STREQUAL "" OR one STREQUAL "")
  message(FATAL_ERROR "resuming at another world size printed no digest")
endif()
# The manager's directory consolidates (its latest checkpoint) into one ordinary .zanj.
execute_process(COMMAND "${ZANJ}" consolidate "${WORK}/split3" "${WORK}/whole.zanj"
                RESULT_VARIABLE rc ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "zanj consolidate failed (${rc}): ${err}")
endif()
execute_process(COMMAND "${ZANJ}" verify "${WORK}/whole.zanj" RESULT_VARIABLE rc OUTPUT_VARIABLE out)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "the consolidated file does not verify: ${out}")
endif()
# What Python sees: the file opens with zipfile + numpy as a MyNN checkpoint.
execute_process(COMMAND /usr/bin/python3 "${CHECKER}" "${WORK}/whole.zanj" RESULT_VARIABLE rc
                OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "check_checkpoint.py rejects the consolidated file: ${out}${err}")
endif()
