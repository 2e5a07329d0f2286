//! The models: an MLP for tabular features and a small CNN for images.

use burn::{
    module::Module,
    nn::{
        Linear, LinearConfig, PaddingConfig2d, Relu,
        conv::{Conv2d, Conv2dConfig},
        pool::{MaxPool2d, MaxPool2dConfig},
    },
    tensor::{Device, Tensor},
};

/// Which model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    /// Two hidden layers of 64 and 32 with ReLU.
    Mlp,
    /// Two 3x3 convolutions (8 and 16 channels) with 2x2 max pooling, then 64 hidden units.
    Cnn,
}

/// A multi-layer perceptron.
#[derive(Module, Debug)]
pub struct Mlp {
    l1: Linear,
    l2: Linear,
    out: Linear,
    act: Relu,
}

impl Mlp {
    fn new(inputs: usize, outputs: usize, device: &Device) -> Self {
        Self {
            l1: LinearConfig::new(inputs, 64).init(device),
            l2: LinearConfig::new(64, 32).init(device),
            out: LinearConfig::new(32, outputs).init(device),
            act: Relu::new(),
        }
    }

    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let x = self.act.forward(self.l1.forward(x));
        let x = self.act.forward(self.l2.forward(x));
        self.out.forward(x)
    }
}

/// A small convolutional network for single-channel images.
#[derive(Module, Debug)]
pub struct Cnn {
    c1: Conv2d,
    c2: Conv2d,
    pool: MaxPool2d,
    fc: Linear,
    out: Linear,
    act: Relu,
    #[module(skip)]
    shape: [usize; 2],
}

impl Cnn {
    fn new(shape: (usize, usize), outputs: usize, device: &Device) -> Self {
        let flat = 16 * (shape.0 / 4) * (shape.1 / 4);
        Self {
            c1: Conv2dConfig::new([1, 8], [3, 3])
                .with_padding(PaddingConfig2d::Same)
                .init(device),
            c2: Conv2dConfig::new([8, 16], [3, 3])
                .with_padding(PaddingConfig2d::Same)
                .init(device),
            pool: MaxPool2dConfig::new([2, 2]).init(),
            fc: LinearConfig::new(flat.max(1), 64).init(device),
            out: LinearConfig::new(64, outputs).init(device),
            act: Relu::new(),
            shape: [shape.0, shape.1],
        }
    }

    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let n = x.dims()[0];
        let x = x.reshape([n, 1, self.shape[0], self.shape[1]]);
        let x = self.pool.forward(self.act.forward(self.c1.forward(x)));
        let x = self.pool.forward(self.act.forward(self.c2.forward(x)));
        let flat = x.dims()[1] * x.dims()[2] * x.dims()[3];
        let x = self.act.forward(self.fc.forward(x.reshape([n, flat])));
        self.out.forward(x)
    }
}

/// Either model. (One lives per job: the size difference of the variants costs nothing.)
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Model {
    /// An MLP.
    Mlp(Mlp),
    /// A CNN.
    Cnn(Cnn),
}

impl Model {
    /// A freshly initialised model (seed the device first for a reproducible start).
    pub fn new(
        kind: ModelKind,
        inputs: usize,
        image: Option<(usize, usize)>,
        outputs: usize,
        device: &Device,
    ) -> Result<Self, String> {
        Ok(match (kind, image) {
            (ModelKind::Mlp, _) => Self::Mlp(Mlp::new(inputs, outputs, device)),
            (ModelKind::Cnn, Some(shape)) if shape.0 >= 4 && shape.1 >= 4 => {
                Self::Cnn(Cnn::new(shape, outputs, device))
            }
            (ModelKind::Cnn, _) => {
                return Err(
                    "--model cnn needs images of at least 4x4 (IDX data); use --model mlp for tables"
                        .into(),
                );
            }
        })
    }

    /// Outputs for a batch of feature rows `[n, inputs]`.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        match self {
            Self::Mlp(m) => m.forward(x),
            Self::Cnn(m) => m.forward(x),
        }
    }
}
