# CTest script: compiles tests/cuda/wgmma_pipelined.cu for sm_90a with `ptxas -v` and fails
# when ptxas reports that a kernel's wgmmas are serialized (its info C7513: "wgmma.mma_async
# instructions are serialized due to ..."), or when a wgmma kernel is missing from the report.
# ptxas falls back to serialized wgmmas silently otherwise: the results stay correct (the
# GPU tests pass) while the passes lose their asynchrony. What causes it and how the kernels
# avoid it: src/cuda/kernels/wgmma.cuh and docs/perf-notes.md (v7).
# Arguments: -DNVCC=... -DSOURCE=... -DINCLUDES="dir;dir" -DOUT=...
foreach(var NVCC SOURCE INCLUDES OUT)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "check_wgmma_pipelined.cmake needs -D${var}=...")
  endif()
endforeach()
set(include_flags)
foreach(dir ${INCLUDES})
  list(APPEND include_flags "-I${dir}")
endforeach()
execute_process(
  COMMAND ${NVCC} -std=c++17 -O3 --expt-relaxed-constexpr -gencode=arch=compute_90a,code=sm_90a -Xptxas -v
          -DTA_HAVE_SM90A=1 ${include_flags} -c ${SOURCE} -o ${OUT}
  RESULT_VARIABLE rc
  OUTPUT_VARIABLE out
  ERROR_VARIABLE err)
set(report "${out}${err}")
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "nvcc failed (${rc}):\n${report}")
endif()
foreach(kernel pb_wg_key_pass pb_wg_key_pass_tma pb_wg_query_pass pb4_wg_query_pass window_mma window_grid_wg)
  if(NOT report MATCHES "Compiling entry function '[^']*${kernel}")
    message(FATAL_ERROR "ptxas compiled no ${kernel}; report:\n${report}")
  endif()
endforeach()
if(report MATCHES "C7513")
  string(REGEX MATCHALL "[^\n]*C7513[^\n]*" lines "${report}")
  string(REPLACE ";" "\n" lines "${lines}")
  message(FATAL_ERROR "ptxas serializes wgmmas:\n${lines}")
endif()
message(STATUS "wgmma kernels pipelined (no C7513)")
