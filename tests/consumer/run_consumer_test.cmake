# Installs netsplit into a scratch prefix, then configures, builds and runs tests/consumer
# against it with find_package. Invoked by ctest (test_consumer_package).
file(REMOVE_RECURSE ${WORK_DIR})
set(prefix ${WORK_DIR}/prefix)
function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "command failed (${rc}): ${ARGN}\n${out}\n${err}")
  endif()
endfunction()
run(${CMAKE_COMMAND} -S ${SOURCE_DIR} -B ${WORK_DIR}/lib -G ${GENERATOR} -DCMAKE_INSTALL_PREFIX=${prefix}
    -DNETSPLIT_BUILD_TESTS=OFF -DNETSPLIT_BUILD_EXAMPLES=OFF -DNETSPLIT_BUILD_BENCHMARKS=OFF)
run(${CMAKE_COMMAND} --install ${WORK_DIR}/lib)
run(${CMAKE_COMMAND} -S ${SOURCE_DIR}/tests/consumer -B ${WORK_DIR}/app -G ${GENERATOR}
    -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_BUILD_TYPE=Release)
run(${CMAKE_COMMAND} --build ${WORK_DIR}/app)
run(${WORK_DIR}/app/consumer)
message(STATUS "consumer project built and ran against ${prefix}")

# The cuda component: found where a CUDA toolkit is (CI has one, without a GPU), and a
# clear configure error where none is (simulated by disabling the toolkit search).
if(EXISTS /usr/local/cuda/bin/nvcc)
  run(${CMAKE_COMMAND} -S ${SOURCE_DIR}/tests/consumer -B ${WORK_DIR}/app-cuda -G ${GENERATOR}
      -DCMAKE_PREFIX_PATH=${prefix} -DCONSUMER_CUDA=ON -DCUDAToolkit_ROOT=/usr/local/cuda)
  message(STATUS "the cuda component resolved against /usr/local/cuda")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} -S ${SOURCE_DIR}/tests/consumer -B ${WORK_DIR}/app-nocuda -G ${GENERATOR}
                        -DCMAKE_PREFIX_PATH=${prefix} -DCONSUMER_CUDA=ON -DCMAKE_DISABLE_FIND_PACKAGE_CUDAToolkit=ON
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(rc EQUAL 0)
  message(FATAL_ERROR "asking for the cuda component without a CUDA toolkit configured:\n${out}\n${err}")
endif()
if(NOT "${out}${err}" MATCHES "component cuda needs the CUDA toolkit")
  message(FATAL_ERROR "the missing cuda component's error does not name it:\n${out}\n${err}")
endif()
message(STATUS "the cuda component without a toolkit fails clearly")
