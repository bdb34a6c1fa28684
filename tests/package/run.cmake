# Builds and runs the consumer project in tests/package against ardent, in one of two ways:
#   MODE=find_package      install ardent to a temporary prefix, then find_package(ardent) from it
#   MODE=add_subdirectory  the consumer adds ardent's source tree with add_subdirectory
cmake_minimum_required(VERSION 3.21)

set(work ${WORK_DIR}/${MODE})
file(REMOVE_RECURSE ${work})
file(MAKE_DIRECTORY ${work})

function(run_step description)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE result OUTPUT_VARIABLE output ERROR_VARIABLE output)
  if(NOT result EQUAL 0)
    message(FATAL_ERROR "${description} failed (${result}):\n${output}")
  endif()
  message(STATUS "${description}: ok")
  set(last_output "${output}" PARENT_SCOPE)
endfunction()

set(common -DCMAKE_BUILD_TYPE=Release)
if(Torch_DIR_FOR_TEST)
  list(APPEND common -DTorch_DIR=${Torch_DIR_FOR_TEST})
endif()

if(MODE STREQUAL "find_package")
  set(prefix ${work}/prefix)
  run_step("configure ardent" ${CMAKE_COMMAND} -S ${ARDENT_SOURCE_DIR} -B ${work}/ardent-build ${common}
    -DARDENT_BUILD_TESTS=OFF -DARDENT_BUILD_EXAMPLES=OFF -DARDENT_BUILD_BENCHMARKS=OFF -DCMAKE_INSTALL_PREFIX=${prefix})
  run_step("install ardent" ${CMAKE_COMMAND} --install ${work}/ardent-build)
  # The installed package must be relocatable: move the prefix before using it.
  file(RENAME ${prefix} ${work}/moved-prefix)
  run_step("configure consumer" ${CMAKE_COMMAND} -S ${CONSUMER_DIR} -B ${work}/consumer-build ${common}
    "-DCMAKE_PREFIX_PATH=${work}/moved-prefix;${CMAKE_PREFIX_PATH_FOR_TEST}" -DCONSUMER_MODE=find_package)
elseif(MODE STREQUAL "add_subdirectory")
  run_step("configure consumer" ${CMAKE_COMMAND} -S ${CONSUMER_DIR} -B ${work}/consumer-build ${common}
    "-DCMAKE_PREFIX_PATH=${CMAKE_PREFIX_PATH_FOR_TEST}" -DCONSUMER_MODE=add_subdirectory -DARDENT_SOURCE_DIR=${ARDENT_SOURCE_DIR})
else()
  message(FATAL_ERROR "MODE must be find_package or add_subdirectory, not '${MODE}'")
endif()

run_step("build consumer" ${CMAKE_COMMAND} --build ${work}/consumer-build -j2)
run_step("run consumer" ${work}/consumer-build/consumer)
if(NOT last_output MATCHES "consumer: ok")
  message(FATAL_ERROR "the consumer did not report success:\n${last_output}")
endif()
file(REMOVE_RECURSE ${work})
