import Foundation

/// The JSON header of a model file. docs/model-format.md lists every field.
///
/// Optional fields are left out of the JSON when nil. Readers ignore fields they do not
/// know, so format version 1 may gain optional fields without a version change.
struct ModelFileHeader: Codable {
    /// The library that wrote the file, `NeuralKit`. Readers do not check it.
    var producer: String
    var model: ModelRecord
    /// Nil for weights-only files and for models saved before `compile`.
    var compile: CompileRecord?
    /// The tensors in the data section, which layers and optimizer slots refer to by index.
    var tensors: [TensorRecord]
}

/// One tensor of the data section.
struct TensorRecord: Codable {
    static let float32 = "float32"

    /// A descriptive name such as `dense/kernel` or `optimizer/m/dense/kernel`, not used for lookup.
    var name: String
    /// Always `float32` in format version 1.
    var dtype: String
    var shape: [Int]
    /// The byte offset from the start of the data section.
    var offset: Int
    /// The byte length: 4 times the product of `shape`.
    var byteCount: Int
}

/// The model's architecture and random state.
struct ModelRecord: Codable {
    var name: String
    /// The shape of one input sample without the batch axis, or nil when the model was not built.
    var inputShape: [Int]?
    /// The model generator's state, which seeds the weights of later builds and `fit`'s
    /// shuffling. Nil in weights-only files.
    var generatorState: [String]?
    var layers: [LayerRecord]
    /// The point inside an epoch where training stopped, or nil after a whole epoch and
    /// in weights-only files.
    var epochPosition: EpochPositionRecord?
}

/// A point inside an epoch of `fit`, from which a loaded model continues that epoch.
struct EpochPositionRecord: Codable {
    /// The 0-based epoch.
    var epoch: Int
    var completedBatches: Int
    var batchesPerEpoch: Int
    var trainingSamples: Int
    var batchSize: Int
    /// The model generator's state at the start of the epoch, which drew its shuffle;
    /// nil when `fit` did not shuffle.
    var shuffleGeneratorState: [String]?
}

/// One layer: its Keras class name, its name, its constructor arguments and its weights.
struct LayerRecord: Codable {
    /// The Keras class name, as `Layer.typeName` returns it: `InputLayer`, `Rescaling`,
    /// `Conv2D`, `MaxPooling2D`, `Dropout`, `Flatten` or `Dense`. Weights-only files may also contain
    /// other names, which only `loadWeights(from:)` reads.
    var type: String
    var name: String
    var config: LayerConfig
    /// Indices into `ModelFileHeader.tensors`, in the order of the layer's `parameters`.
    var weights: [Int]
    /// A `Dropout` layer's mask generator state. Nil for other layers and in weights-only files.
    var generatorState: [String]?
}

/// The constructor arguments of a layer. Each layer type uses a subset.
struct LayerConfig: Codable {
    /// `InputLayer`: the sample shape.
    var shape: [Int]?
    /// `Dense`.
    var units: Int?
    /// `Conv2D`.
    var filters: Int?
    /// `Conv2D`: `[height, width]`.
    var kernelSize: [Int]?
    /// `MaxPooling2D`: `[height, width]`.
    var poolSize: [Int]?
    /// `Conv2D` and `MaxPooling2D`: `[height, width]`.
    var strides: [Int]?
    /// `Conv2D` and `MaxPooling2D`: `valid` or `same`.
    var padding: String?
    /// `Dense` and `Conv2D`: `linear`, `relu`, `sigmoid`, `tanh` or `softmax`.
    var activation: String?
    /// `Dense` and `Conv2D`.
    var useBias: Bool?
    /// `Dropout`.
    var rate: Float?
    /// `Rescaling`.
    var scale: Float?
    /// `Rescaling`.
    var offset: Float?
}

/// The arguments of `compile` and the optimizer's state.
struct CompileRecord: Codable {
    var loss: LossRecord
    var optimizer: OptimizerRecord
    /// The metric strings passed to `compile(loss:optimizer:metrics:)`, e.g. `accuracy`.
    var metricNames: [String]
    /// The metric objects passed to the other `compile` overload.
    var metricObjects: [MetricRecord]
}

/// A loss type and its settings.
struct LossRecord: Codable {
    /// `SparseCategoricalCrossentropy` or `CategoricalCrossentropy`.
    var type: String
    var config: LossConfig
}

struct LossConfig: Codable {
    var fromLogits: Bool
    /// `sum_over_batch_size`, `sum` or `none`, as Keras spells them.
    var reduction: String
    /// `SparseCategoricalCrossentropy` only. Nil means no ignored class.
    var ignoreClass: Int?
    /// `CategoricalCrossentropy`.
    var labelSmoothing: Float?
}

/// An optimizer type, its hyperparameters and its state.
struct OptimizerRecord: Codable {
    /// `Adam` or `SGD`.
    var type: String
    var config: OptimizerConfig
    /// The number of updates applied so far.
    var iterations: Int
    /// Per-parameter state tensors by slot name, each list in `Sequential.parameters`
    /// order: `m` and `v` for Adam, `velocity` for SGD. A list is empty before the
    /// first update.
    var slots: [String: [Int]]
}

struct OptimizerConfig: Codable {
    var learningRate: Float
    /// Adam.
    var beta1: Float?
    var beta2: Float?
    var epsilon: Float?
    /// SGD.
    var momentum: Float?
    var nesterov: Bool?
}

/// A metric object passed to `compile`.
struct MetricRecord: Codable {
    /// `SparseCategoricalAccuracy`, `CategoricalAccuracy`, `SparseTopKCategoricalAccuracy` or `BinaryAccuracy`.
    var type: String
    var name: String
    /// `SparseTopKCategoricalAccuracy`.
    var k: Int?
    /// `BinaryAccuracy`.
    var threshold: Float?
    /// `SparseCategoricalAccuracy`; absent for none.
    var ignoreClass: Int?
}
