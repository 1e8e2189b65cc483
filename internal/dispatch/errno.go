package dispatch

import "syscall"

// syscallECONNREFUSED names a refused connection in errorClass.
const syscallECONNREFUSED = syscall.ECONNREFUSED
