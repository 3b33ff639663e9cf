_base_ = ['../_base_/fact-tk.py']

data_root = 'data/quickstart/digits5-9'
model = dict(head=dict(num_classes=5))
data_preprocessor = dict(num_classes=5)
train_dataloader = dict(dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = dict(dataset=dict(data_root=data_root))
