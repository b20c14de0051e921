import onnx
from onnx import TensorProto, helper

x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
k = helper.make_tensor_value_info("k", TensorProto.INT64, [])
outs = [helper.make_tensor_value_info("relu", TensorProto.FLOAT, [2, 3]),
        helper.make_tensor_value_info("half", TensorProto.FLOAT16, [2, 3]),
        helper.make_tensor_value_info("argmax", TensorProto.INT64, [2]),
        helper.make_tensor_value_info("positive", TensorProto.BOOL, [2, 3]),
        helper.make_tensor_value_info("k_plus_one", TensorProto.INT64, [])]
one = helper.make_tensor("one", TensorProto.INT64, [], [1])
zero = helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])
nodes = [helper.make_node("Relu", ["x"], ["relu"]),
         helper.make_node("Cast", ["x"], ["half"], to=TensorProto.FLOAT16),
         helper.make_node("ArgMax", ["x"], ["argmax"], axis=1, keepdims=0),
         helper.make_node("Greater", ["x", "zero"], ["positive"]),
         helper.make_node("Add", ["k", "one"], ["k_plus_one"])]
graph = helper.make_graph(nodes, "polygraphy_fixture", [x, k], outs, [one, zero])
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
model.ir_version = 8
onnx.checker.check_model(model)
onnx.save(model, "fixture.onnx")
