"""The decoder as an ONNX Runtime session, for one-latent decodes on the CPU (slider moves).

PyTorch's eager CPU path spends most of a batch-of-one decode of the demo model outside the
arithmetic: its convolutions at 4×4…16×16 fall back to the generic slow_conv2d kernel, every
op is dispatched from Python, and the 3×3 stride-2 transposed convolutions go through col2im
(measured 2.3–2.8 ms against a FLOP bound of 0.3 ms). ONNX Runtime runs the same graph with
blocked (NCHWc) convolutions and fused activations in one call.

The graph is written here from the module's weights, op by op, rather than exported by
torch.onnx, whose TorchScript exporter is deprecated and whose new one needs onnxscript: a
graph written by hand is small and chooses its ops. Tried and measured on the demo decoder
(one thread): the transposed convolutions rewritten as sub-pixel convolutions (a 2×2 conv to
4× the channels, then DepthToSpace) were slower, as ONNX Runtime's DepthToSpace is a generic
transpose (125 µs at 16×64×64); the last 16 → 1 convolution is a depthwise convolution and a
matmul over channels (see `conv`). `OrtDecoder.check` compares the result against the module
before the app uses it.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from vae.model import Decoder, ResBlock

OPSET = 18


class Unsupported(ValueError):
    """The decoder holds a layer this translation does not know; use the torch module."""


def _array(t: torch.Tensor) -> np.ndarray:
    return t.detach().float().cpu().contiguous().numpy()


class _Graph:
    """Accumulates ONNX nodes and weights; names are generated."""

    def __init__(self) -> None:
        from onnx import helper, numpy_helper

        self.helper, self.numpy_helper = helper, numpy_helper
        self.nodes: list = []
        self.weights: list = []
        self.count = 0

    def name(self, stem: str) -> str:
        self.count += 1
        return f"{stem}{self.count}"

    def const(self, value: np.ndarray, stem: str = "w") -> str:
        name = self.name(stem)
        self.weights.append(self.numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(self, op_type: str, inputs: list[str], **attrs) -> str:
        out = self.name(op_type.lower())
        self.nodes.append(self.helper.make_node(op_type, inputs, [out], **attrs))
        return out

    def silu(self, x: str) -> str:
        return self.op("Mul", [x, self.op("Sigmoid", [x])])

    def conv(self, x: str, conv: nn.Conv2d, side: int) -> str:
        # Only size-keeping convolutions: the graph's reshapes are written for static sides.
        keeps = isinstance(conv.padding, tuple) and all(
            2 * p == k - 1 for p, k in zip(conv.padding, conv.kernel_size, strict=True)
        )
        if conv.dilation != (1, 1) or conv.stride != (1, 1) or not keeps:
            raise Unsupported(f"Conv2d with stride {conv.stride}, dilation {conv.dilation} or "
                              f"padding {conv.padding}")  # fmt: skip
        if conv.padding_mode != "zeros":
            raise Unsupported(f"Conv2d with padding_mode {conv.padding_mode!r}")
        ph, pw = conv.padding
        pads = [ph, pw, ph, pw]
        weight = _array(conv.weight)  # (c_out, c_in / groups, kh, kw)
        c_out, c_in = conv.out_channels, conv.in_channels
        if c_out == 1 and conv.groups == 1 and c_in > 1:
            # The decoder's last layer (16 -> 1 for the demo). Blocked convolutions pad the
            # output channels to the SIMD width, 16× the work here (measured 213 µs); a
            # depthwise convolution and a sum over channels is the same arithmetic (120 µs).
            h = self.op("Conv", [x, self.const(weight.reshape(c_in, 1, *conv.kernel_size))],
                        kernel_shape=list(conv.kernel_size), pads=pads, group=c_in)  # fmt: skip
            # The channel sum as a (1, c_in) @ (N, c_in, H·W) matmul: ReduceSum over axis 1
            # takes a generic strided path (130 µs here, against ~10 µs).
            h = self.op("Reshape", [h, self.const(np.array([0, c_in, -1], np.int64), "shape")])
            h = self.op("MatMul", [self.const(np.ones((1, c_in), np.float32)), h])
            h = self.op(
                "Reshape", [h, self.const(np.array([-1, 1, side, side], np.int64), "shape")]
            )
            if conv.bias is None:
                return h
            return self.op("Add", [h, self.const(_array(conv.bias).reshape(1, 1, 1))])
        inputs = [x, self.const(weight)]
        if conv.bias is not None:
            inputs.append(self.const(_array(conv.bias)))
        return self.op("Conv", inputs, kernel_shape=list(conv.kernel_size), pads=pads,
                       group=conv.groups)  # fmt: skip

    def conv_transpose(self, x: str, conv: nn.ConvTranspose2d) -> str:
        if conv.dilation != (1, 1) or not isinstance(conv.padding, tuple):
            raise Unsupported(
                f"ConvTranspose2d with dilation {conv.dilation} or padding {conv.padding}"
            )
        if conv.padding_mode != "zeros":
            raise Unsupported(f"ConvTranspose2d with padding_mode {conv.padding_mode!r}")
        inputs = [x, self.const(_array(conv.weight))]
        if conv.bias is not None:
            inputs.append(self.const(_array(conv.bias)))
        ph, pw = conv.padding
        return self.op("ConvTranspose", inputs, kernel_shape=list(conv.kernel_size),
                       strides=list(conv.stride), pads=[ph, pw, ph, pw],
                       output_padding=list(conv.output_padding), group=conv.groups)  # fmt: skip

    def norm(self, x: str, norm: nn.Module, side: int) -> str:
        if isinstance(norm, nn.GroupNorm):
            c, g = norm.num_channels, norm.num_groups
            # GroupNorm = InstanceNorm over (N, G, C/G·H·W), then the per-channel affine.
            h = self.op("Reshape", [x, self.const(np.array([0, g, -1], np.int64), "shape")])
            ones, zeros = np.ones(g, np.float32), np.zeros(g, np.float32)
            h = self.op("InstanceNormalization", [h, self.const(ones), self.const(zeros)],
                        epsilon=float(norm.eps))  # fmt: skip
            back = self.const(np.array([-1, c, side, side], np.int64), "shape")
            h = self.op("Reshape", [h, back])
            scale = _array(norm.weight).reshape(c, 1, 1) if norm.affine else np.ones((c, 1, 1))
            shift = _array(norm.bias).reshape(c, 1, 1) if norm.affine else np.zeros((c, 1, 1))
            h = self.op("Mul", [h, self.const(scale.astype(np.float32))])
            return self.op("Add", [h, self.const(shift.astype(np.float32))])
        if isinstance(norm, nn.BatchNorm2d):  # eval mode: a fixed per-channel affine
            inv = 1.0 / np.sqrt(_array(norm.running_var) + norm.eps)
            scale = inv * (_array(norm.weight) if norm.affine else 1.0)
            shift = -_array(norm.running_mean) * scale
            shift = shift + (_array(norm.bias) if norm.affine else 0.0)
            h = self.op("Mul", [x, self.const(scale.reshape(-1, 1, 1).astype(np.float32))])
            return self.op("Add", [h, self.const(shift.reshape(-1, 1, 1).astype(np.float32))])
        raise Unsupported(f"normalization {type(norm).__name__}")

    def resblock(self, x: str, block: ResBlock, side: int) -> str:
        h = x
        for layer in block.body:
            h = self.layer(h, layer, side)
        skip = x if isinstance(block.skip, nn.Identity) else self.layer(x, block.skip, side)
        return self.op("Add", [h, skip])

    def layer(self, x: str, layer: nn.Module, side: int) -> str:
        if isinstance(layer, ResBlock):
            return self.resblock(x, layer, side)
        if isinstance(layer, nn.ConvTranspose2d):
            return self.conv_transpose(x, layer)
        if isinstance(layer, nn.Conv2d):
            return self.conv(x, layer, side)
        if isinstance(layer, (nn.GroupNorm, nn.BatchNorm2d)):
            return self.norm(x, layer, side)
        if isinstance(layer, nn.SiLU):
            return self.silu(x)
        if isinstance(layer, nn.Sigmoid):
            return self.op("Sigmoid", [x])
        raise Unsupported(f"layer {type(layer).__name__}")


def decoder_graph(decoder: Decoder) -> bytes:
    """The serialized ONNX model of `decoder` in eval mode: z (N, dz) -> image (N, C, H, W)."""
    from onnx import TensorProto, helper

    g = _Graph()
    linear, (c, h, w) = decoder.from_latent, decoder.unflatten.unflattened_size
    x = g.op("Gemm", ["z", g.const(_array(linear.weight)), g.const(_array(linear.bias))], transB=1)
    x = g.op("Reshape", [x, g.const(np.array([-1, c, h, w], np.int64), "shape")])
    side = h
    for layer in decoder.body:
        x = g.layer(x, layer, side)
        if isinstance(layer, nn.ConvTranspose2d):
            side = (side - 1) * layer.stride[0] - 2 * layer.padding[0] + layer.kernel_size[0]
            side += layer.output_padding[0]
    g.nodes[-1].output[0] = "image"
    dz = linear.in_features
    graph = helper.make_graph(
        g.nodes,
        "decoder",
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", dz])],
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", None, None, None])],
        initializer=g.weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8  # IR 8 with opset 18: ONNX Runtime 1.14 and later (requirements: 1.19)
    return model.SerializeToString()


class OrtDecoder:
    """`decoder(z)` for z (N, dz) float32 on ONNX Runtime's CPU provider, with `threads` threads.

    Raises Unsupported for layers it cannot translate, ImportError without onnxruntime, and
    ValueError from `check` when its output disagrees with the module's."""

    def __init__(self, decoder: Decoder, threads: int = 1) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Without this, idle intra-op threads spin between calls and take a core from the server.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(
            decoder_graph(decoder), options, providers=["CPUExecutionProvider"]
        )
        self.latent_dim = decoder.from_latent.in_features

    def __call__(self, z: np.ndarray) -> np.ndarray:
        z = np.ascontiguousarray(z, dtype=np.float32)
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"expected z of shape (B, {self.latent_dim}), got {z.shape}")
        return self.session.run(None, {"z": z})[0]

    def check(self, decoder: Decoder, atol: float = 1e-4, seed: int = 0) -> float:
        """Largest |difference| from the torch module on a few random latents; ValueError when
        it exceeds `atol` (pixels are in [0, 1])."""
        z = torch.randn(3, self.latent_dim, generator=torch.Generator().manual_seed(seed)) * 2
        with torch.inference_mode():
            want = decoder(z).float().numpy()
        diff = float(np.abs(self(z.numpy()) - want).max())
        if not diff <= atol:
            raise ValueError(f"ONNX Runtime decoder differs from the module by {diff:.3g}")
        return diff
