"""The built-in convolution backends, each one module and one class, all with torch's ``conv2d`` semantics.

- ``conformance.impls.naive.NaiveLoops`` (``naive``): the textbook definition as nested Python loops; the readable
  oracle for small problems.
- ``conformance.impls.scipy_correlate.ScipyCorrelate`` (``scipy``): ``scipy.signal.correlate`` per 2-D plane,
  ``method="direct"``.
- ``conformance.impls.im2col.Im2col`` (``im2col``): unfold into columns and one batched GEMM per group; the fast
  numpy path.
- ``conformance.impls.fft.FFTConv`` (``fft``): the convolution theorem, ``scipy.fft`` real FFTs of whole planes;
  normwise error model. Large problems go to the same method on overlap-save tiles, vectorised over batch and
  channels (``fft_tiled``, a helper module of ``fft``, as ``explicit_padding`` is of the numpy backends).
- ``conformance.impls.torch_cpu.TorchCPU`` (``torch-cpu``): ``torch.nn.functional.conv2d`` and autograd on the CPU.
- ``conformance.impls.torch_cuda.TorchCudaStrict`` (``torch-cuda-strict``): CUDA with cuDNN and TF32 off; IEEE fp32.
- ``conformance.impls.torch_cuda.TorchCudaDefault`` (``torch-cuda-default``): CUDA as a user gets it: cuDNN on,
  TF32 convolutions.
"""
